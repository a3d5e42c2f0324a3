package weir.peer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import weir.peer.categorysales.Catalog;
import weir.peer.categorysales.CategorySalesTopology;
import weir.peer.sessionstats.SessionStatsTopology;

/** Command line, configuration and lifecycle of the peer (either topology). */
public final class Main {
    private Main() {}

    private static final Logger LOG = LoggerFactory.getLogger(Main.class);

    private static final String USAGE = String.join("\n",
            "usage: java -jar streams-peer.jar --bootstrap HOST:PORT --input TOPIC --output TOPIC",
            "           --application-id ID [--topology session-stats|category-sales] [--catalog JDBC_URL]",
            "           [--threads N] [--guarantee exactly_once_v2|at_least_once]",
            "           [--commit-interval-ms MS] [--state-dir DIR] [--cache-max-bytes BYTES]",
            "           [--instance-id NAME] [--set KEY=VALUE]...",
            "",
            "  --topology            session-stats (default): per session, keyed as the input is;",
            "                        category-sales: purchases' items summed per product category,",
            "                        grouped by the category through a repartition topic",
            "  --catalog             category-sales: a PostgreSQL JDBC URL whose `products` table",
            "                        (product_id, category) is read once at start",
            "  --threads             stream threads (default 2)",
            "  --guarantee           processing guarantee (default exactly_once_v2)",
            "  --commit-interval-ms  commit (and cache flush) interval (default 1000)",
            "  --state-dir           RocksDB state directory (default: Kafka Streams' own, under java.io.tmpdir)",
            "  --cache-max-bytes     record cache in front of the store, all threads together (default 67108864)",
            "  --instance-id         static group membership (group.instance.id): a restart after a crash",
            "                        takes its partitions back at once instead of after session.timeout.ms",
            "  --set KEY=VALUE       any Kafka Streams / client property, applied last (repeatable)",
            "",
            "Prints RUNNING on stdout each time the application reaches the RUNNING state.",
            "Runs until SIGTERM or SIGINT, then commits and closes.");

    /** The parsed command line. */
    static final class Args {
        String bootstrap;
        String input;
        String output;
        String applicationId;
        String topology = "session-stats";
        String catalog;
        int threads = 2;
        String guarantee = StreamsConfig.EXACTLY_ONCE_V2;
        long commitIntervalMs = 1000;
        String stateDir;
        String instanceId;
        long cacheMaxBytes = 64L * 1024 * 1024;
        final List<String[]> overrides = new ArrayList<>();

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String flag = argv[i];
                if (flag.equals("-h") || flag.equals("--help")) {
                    System.out.println(USAGE);
                    System.exit(0);
                }
                String value;
                int eq = flag.indexOf('=');
                if (flag.startsWith("--") && eq > 0) {
                    value = flag.substring(eq + 1);
                    flag = flag.substring(0, eq);
                } else {
                    if (i + 1 >= argv.length) {
                        throw new IllegalArgumentException(flag + " needs a value");
                    }
                    value = argv[++i];
                }
                switch (flag) {
                    case "--bootstrap":
                        a.bootstrap = value;
                        break;
                    case "--input":
                        a.input = value;
                        break;
                    case "--output":
                        a.output = value;
                        break;
                    case "--application-id":
                        a.applicationId = value;
                        break;
                    case "--topology":
                        if (!value.equals("session-stats") && !value.equals("category-sales")) {
                            throw new IllegalArgumentException("--topology must be session-stats or category-sales");
                        }
                        a.topology = value;
                        break;
                    case "--catalog":
                        a.catalog = value;
                        break;
                    case "--threads":
                        a.threads = Integer.parseInt(value);
                        if (a.threads < 1) {
                            throw new IllegalArgumentException("--threads must be at least 1");
                        }
                        break;
                    case "--guarantee":
                        if (!value.equals(StreamsConfig.EXACTLY_ONCE_V2) && !value.equals(StreamsConfig.AT_LEAST_ONCE)) {
                            throw new IllegalArgumentException("--guarantee must be exactly_once_v2 or at_least_once");
                        }
                        a.guarantee = value;
                        break;
                    case "--commit-interval-ms":
                        a.commitIntervalMs = Long.parseLong(value);
                        break;
                    case "--state-dir":
                        a.stateDir = value;
                        break;
                    case "--instance-id":
                        a.instanceId = value;
                        break;
                    case "--cache-max-bytes":
                        a.cacheMaxBytes = Long.parseLong(value);
                        break;
                    case "--set": {
                        int kv = value.indexOf('=');
                        if (kv <= 0) {
                            throw new IllegalArgumentException("--set needs KEY=VALUE");
                        }
                        a.overrides.add(new String[] {value.substring(0, kv), value.substring(kv + 1)});
                        break;
                    }
                    default:
                        throw new IllegalArgumentException("unknown option " + flag);
                }
            }
            for (String[] required : new String[][] {
                    {"--bootstrap", a.bootstrap}, {"--input", a.input},
                    {"--output", a.output}, {"--application-id", a.applicationId}}) {
                if (required[1] == null || required[1].isEmpty()) {
                    throw new IllegalArgumentException(required[0] + " is required");
                }
            }
            if (a.topology.equals("category-sales") && a.catalog == null) {
                throw new IllegalArgumentException("--topology category-sales needs --catalog");
            }
            return a;
        }
    }

    /** The Kafka Streams configuration; README.md explains each choice. */
    static Properties config(Args a) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.applicationId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.bootstrap);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.threads);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.guarantee);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.commitIntervalMs);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, a.cacheMaxBytes);
        if (a.stateDir != null) {
            p.put(StreamsConfig.STATE_DIR_CONFIG, a.stateDir);
        }
        if (a.instanceId != null) {
            // Streams suffixes it per stream thread.
            p.put(StreamsConfig.consumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG), a.instanceId);
        }
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.OPTIMIZE);
        // A new application starts from the beginning of its input.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Producer (output rows and changelog): few large compressed requests,
        // as weir's own Kafka writers are configured.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 1024 * 1024);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 100);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BUFFER_MEMORY_CONFIG), 64L * 1024 * 1024);
        // Consumer: larger fetches and polls while catching up on a backlog.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 2000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG), 4 * 1024 * 1024);
        for (String[] kv : a.overrides) {
            p.put(kv[0], kv[1]);
        }
        return p;
    }

    public static void main(String[] argv) throws InterruptedException {
        Args args;
        try {
            args = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(2);
            return;
        }
        Properties config = config(args);
        Topology topology;
        AtomicLong skipped;
        if (args.topology.equals("category-sales")) {
            Catalog catalog;
            try {
                catalog = Catalog.load(args.catalog);
            } catch (java.sql.SQLException e) {
                System.err.println("error: cannot read the catalog: " + e.getMessage());
                System.exit(2);
                return;
            }
            System.err.printf("streams-peer: %d products in the catalog%n", catalog.size());
            topology = CategorySalesTopology.build(args.input, args.output, catalog, config);
            skipped = CategorySalesTopology.SKIPPED;
        } else {
            topology = SessionStatsTopology.build(args.input, args.output, config);
            skipped = SessionStatsTopology.SKIPPED;
        }
        KafkaStreams streams = new KafkaStreams(topology, config);

        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean failed = new AtomicBoolean(false);
        streams.setUncaughtExceptionHandler(e -> {
            LOG.error("stream thread failed; shutting the application down", e);
            failed.set(true);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((next, previous) -> {
            System.err.println("state " + previous + " -> " + next);
            if (next == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            } else if (next == KafkaStreams.State.ERROR) {
                failed.set(true);
                stopped.countDown();
            }
        });

        // SIGTERM and SIGINT close the application and exit with status 0
        // (the JVM's own handling would exit 143 / 130 after the hooks).
        for (String signal : new String[] {"TERM", "INT"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(signal), s -> stopped.countDown());
        }
        // Any other way out of the JVM still closes (and so commits) first.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> closeAndReport(streams, skipped), "shutdown"));

        System.err.printf("streams-peer: %s: %s -> %s, application.id=%s, threads=%d, guarantee=%s, commit.interval.ms=%d%n",
                args.topology, args.input, args.output, args.applicationId, args.threads, args.guarantee, args.commitIntervalMs);
        streams.start();
        stopped.await();
        // A signal, or the application failed on its own (then exit non-zero).
        // The shutdown hook finds it closed already.
        boolean clean = closeAndReport(streams, skipped);
        System.exit(failed.get() ? 1 : clean ? 0 : 3);
    }

    private static final Object CLOSE_LOCK = new Object();
    private static boolean closed;

    /** Closes (committing what was processed) once; true if it closed within the timeout. */
    private static boolean closeAndReport(KafkaStreams streams, AtomicLong skipped) {
        synchronized (CLOSE_LOCK) {
            if (closed) {
                return true;
            }
            closed = true;
        }
        // Leave the consumer group (Kafka Streams stays in it by default), so a
        // restart soon after does not wait for the old members to time out.
        boolean clean = streams.close(CloseOptions
                .groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(Duration.ofSeconds(60)));
        System.err.printf("streams-peer: closed%s; skipped %d input records the topology could not read%n",
                clean ? "" : " (timed out)", skipped.get());
        return clean;
    }
}
