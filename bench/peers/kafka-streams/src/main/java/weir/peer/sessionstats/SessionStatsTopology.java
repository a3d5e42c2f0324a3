package weir.peer.sessionstats;

import java.util.Collections;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The topology: input events (key = session id, value = JSON) are parsed,
 * grouped by their key (no repartition: the input is already keyed by
 * session), folded into a persistent, changelogged RocksDB store, and the
 * updated rows are written to the output topic as JSON keyed by session id.
 */
public final class SessionStatsTopology {
    private SessionStatsTopology() {}

    /** The state store; its changelog topic is {@code <application-id>-session-stats-store-changelog}. */
    static final String STORE = "session-stats-store";

    private static final Logger LOG = LoggerFactory.getLogger(SessionStatsTopology.class);

    /** Input records skipped because they are not session events (or have no key). */
    public static final AtomicLong SKIPPED = new AtomicLong();

    public static Topology build(String input, String output, Properties config) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .flatMapValues((sessionId, value) -> {
                    if (sessionId == null) {
                        skip(sessionId, "no key (session id)");
                        return Collections.<Event>emptyList();
                    }
                    try {
                        return Collections.singletonList(Event.parse(value));
                    } catch (Event.MalformedException e) {
                        skip(sessionId, e.getMessage());
                        return Collections.<Event>emptyList();
                    }
                })
                .groupByKey(Grouped.with(Serdes.String(), new EventSerde()))
                .aggregate(
                        SessionState::new,
                        (sessionId, event, state) -> state.fold(event),
                        // The default persistent store (RocksDB), with its changelog
                        // (logging is on by default) and the record cache in front.
                        Materialized.<String, SessionState, KeyValueStore<Bytes, byte[]>>as(STORE)
                                .withKeySerde(Serdes.String())
                                .withValueSerde(new SessionState.StateSerde()))
                .toStream()
                .mapValues(Rows::json)
                .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return builder.build(config);
    }

    private static void skip(String sessionId, String why) {
        if (SKIPPED.getAndIncrement() == 0) {
            LOG.warn("skipping input records that are not session events (logged once, counted from here on); first: key={} reason={}",
                    sessionId, why);
        }
    }
}
