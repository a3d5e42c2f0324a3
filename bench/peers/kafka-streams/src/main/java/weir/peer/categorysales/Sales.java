package weir.peer.categorysales;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.util.ByteArrayBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/**
 * One category's running sums, as weir's `category-sales` plugin keeps
 * them: units, revenue in whole cents (each line's price rounded to the
 * cent, times its quantity: exact), order lines.
 */
final class Sales {
    long units;
    long revenueCents;
    long lines;

    /** Folds one item in. Returns this. */
    Sales fold(Item item) {
        units += item.quantity;
        revenueCents += Math.round(item.price * 100) * item.quantity;
        lines++;
        return this;
    }

    private static final JsonFactory JSON = JsonFactory.builder().build();

    /** The output row: CATEGORY, UNITS_SOLD, REVENUE, ORDER_LINES as one JSON object. */
    static byte[] json(String category, Sales s) {
        ByteArrayBuilder out = new ByteArrayBuilder(128);
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartObject();
            g.writeStringField("CATEGORY", category);
            g.writeNumberField("UNITS_SOLD", s.units);
            g.writeNumberField("REVENUE", s.revenueCents / 100.0);
            g.writeNumberField("ORDER_LINES", s.lines);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** Stored as three 8-byte longs. */
    static Serde<Sales> serde() {
        return Serdes.serdeFrom(Sales::encode, Sales::decode);
    }

    private static byte[] encode(String topic, Sales s) {
        if (s == null) {
            return null;
        }
        return ByteBuffer.allocate(24).putLong(s.units).putLong(s.revenueCents).putLong(s.lines).array();
    }

    private static Sales decode(String topic, byte[] data) {
        if (data == null) {
            return null;
        }
        if (data.length != 24) {
            throw new SerializationException("a state of " + data.length + " bytes");
        }
        ByteBuffer in = ByteBuffer.wrap(data);
        Sales s = new Sales();
        s.units = in.getLong();
        s.revenueCents = in.getLong();
        s.lines = in.getLong();
        return s;
    }
}
