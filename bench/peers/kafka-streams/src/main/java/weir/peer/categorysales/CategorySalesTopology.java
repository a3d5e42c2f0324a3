package weir.peer.categorysales;

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
 * The topology of weir's `pipelines/category-sales.toml`: each purchase
 * split into its items with their catalog category, grouped by the category
 * (Kafka Streams writes them through its repartition topic,
 * {@code <application-id>-category-sales-repartition}), summed into a
 * persistent, changelogged store, the updated rows written as JSON keyed by
 * the category.
 */
public final class CategorySalesTopology {
    private CategorySalesTopology() {}

    /** The state store; its changelog is {@code <application-id>-category-sales-store-changelog}. */
    static final String STORE = "category-sales-store";

    /** Names the repartition topic: {@code <application-id>-category-sales-repartition}. */
    static final String GROUPING = "category-sales";

    private static final Logger LOG = LoggerFactory.getLogger(CategorySalesTopology.class);

    /** Input records skipped because they could not be read. */
    public static final AtomicLong SKIPPED = new AtomicLong();

    public static Topology build(String input, String output, Catalog catalog, Properties config) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .flatMapValues((session, value) -> {
                    try {
                        return Purchase.items(value, catalog);
                    } catch (Purchase.MalformedException e) {
                        skip(session, e.getMessage());
                        return Collections.<Item>emptyList();
                    }
                })
                .groupBy((session, item) -> item.category, Grouped.with(GROUPING, Serdes.String(), Item.serde()))
                .aggregate(
                        Sales::new,
                        (category, item, sales) -> sales.fold(item),
                        Materialized.<String, Sales, KeyValueStore<Bytes, byte[]>>as(STORE)
                                .withKeySerde(Serdes.String())
                                .withValueSerde(Sales.serde()))
                .toStream()
                .mapValues(Sales::json)
                .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
        return builder.build(config);
    }

    private static void skip(String session, String why) {
        if (SKIPPED.getAndIncrement() == 0) {
            LOG.warn("skipping input records that cannot be read (logged once, counted from here on); first: key={} reason={}",
                    session, why);
        }
    }
}
