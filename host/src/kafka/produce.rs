//! Sending a whole flush to Kafka and awaiting every acknowledgement.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How long records wait, in all, for room in librdkafka's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `records` and returns once Kafka has acknowledged every one, or
/// with the first error. All are queued in librdkafka first (waiting while
/// its queue is full, [`QUEUE_TIMEOUT`] at most), then their deliveries are
/// awaited: one small future per record, not one large one each polled
/// together (a flush is thousands of records).
pub async fn send_all<'a, K, P>(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'a, K, P>>,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized + 'a,
    P: ToBytes + ?Sized + 'a,
{
    let mut deliveries = Vec::with_capacity(records.len());
    let deadline = tokio::time::Instant::now() + QUEUE_TIMEOUT;
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if tokio::time::Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(error),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}
