package weir.peer.categorysales;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** One item of a purchase, with its product's category: what crosses the repartition topic. */
final class Item {
    final String category;
    final double price;
    final long quantity;

    Item(String category, double price, long quantity) {
        this.category = category;
        this.price = price;
        this.quantity = quantity;
    }

    /** Stored as: 8 bytes price, 8 bytes quantity, the category's UTF-8. */
    static Serde<Item> serde() {
        return Serdes.serdeFrom(Item::encode, Item::decode);
    }

    private static byte[] encode(String topic, Item item) {
        if (item == null) {
            return null;
        }
        byte[] category = item.category.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(16 + category.length)
                .putDouble(item.price)
                .putLong(item.quantity)
                .put(category)
                .array();
    }

    private static Item decode(String topic, byte[] data) {
        if (data == null) {
            return null;
        }
        if (data.length < 16) {
            throw new SerializationException("an item of " + data.length + " bytes");
        }
        ByteBuffer in = ByteBuffer.wrap(data);
        double price = in.getDouble();
        long quantity = in.getLong();
        String category = new String(data, 16, data.length - 16, StandardCharsets.UTF_8);
        return new Item(category, price, quantity);
    }
}
