package weir.peer.sessionstats;

import java.util.Map;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * The serde of a parsed {@link Event}. The topology groups by the input key,
 * so Kafka Streams never repartitions and never actually calls it; it exists
 * so that {@code Grouped} names a real, compact serde should the topology
 * ever need one.
 */
final class EventSerde implements Serde<Event>, Serializer<Event>, Deserializer<Event> {
    private static final int HAS_USER_ID = 1;
    private static final int HAS_USER_SEGMENT = 2;
    private static final int HAS_SESSION_STATE = 4;
    private static final int HAS_COUNT = 8;
    private static final int HAS_TOTAL = 16;

    @Override
    public byte[] serialize(String topic, Event e) {
        if (e == null) {
            return null;
        }
        byte[] user = Codec.utf8(e.userId);
        byte[] segment = Codec.utf8(e.userSegment);
        byte[] state = Codec.utf8(e.sessionState);
        long count = Codec.zigzag(e.cartItemCount);
        int size = 2 + Codec.stringSize(user) + Codec.stringSize(segment) + Codec.stringSize(state)
                + (e.hasCartItemCount ? Codec.varintSize(count) : 0) + (e.hasCartTotal ? 8 : 0);
        Codec.Writer w = new Codec.Writer(size);
        w.byte1(e.type);
        w.byte1((user != null ? HAS_USER_ID : 0) | (segment != null ? HAS_USER_SEGMENT : 0)
                | (state != null ? HAS_SESSION_STATE : 0) | (e.hasCartItemCount ? HAS_COUNT : 0)
                | (e.hasCartTotal ? HAS_TOTAL : 0));
        w.string(user);
        w.string(segment);
        w.string(state);
        if (e.hasCartItemCount) {
            w.varint(count);
        }
        if (e.hasCartTotal) {
            w.float64(e.cartTotal);
        }
        return w.done();
    }

    @Override
    public Event deserialize(String topic, byte[] bytes) {
        if (bytes == null) {
            return null;
        }
        Codec.Reader r = new Codec.Reader(bytes);
        byte type = (byte) r.byte1();
        int flags = r.byte1();
        String user = (flags & HAS_USER_ID) != 0 ? r.string() : null;
        String segment = (flags & HAS_USER_SEGMENT) != 0 ? r.string() : null;
        String state = (flags & HAS_SESSION_STATE) != 0 ? r.string() : null;
        boolean hasCount = (flags & HAS_COUNT) != 0;
        long count = hasCount ? Codec.unzigzag(r.varint()) : 0;
        boolean hasTotal = (flags & HAS_TOTAL) != 0;
        double total = hasTotal ? r.float64() : 0;
        r.end();
        return new Event(type, user, segment, state, hasCount, count, hasTotal, total);
    }

    @Override
    public Serializer<Event> serializer() {
        return this;
    }

    @Override
    public Deserializer<Event> deserializer() {
        return this;
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {}

    @Override
    public void close() {}
}
