package weir.peer.sessionstats;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.util.ByteArrayBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;

/** Writes the output row: one JSON object with the ten upper-case columns. */
final class Rows {
    private Rows() {}

    private static final JsonFactory JSON = JsonFactory.builder().build();

    static byte[] json(String sessionId, SessionState s) {
        ByteArrayBuilder out = new ByteArrayBuilder(256);
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartObject();
            g.writeStringField("SESSION_ID", sessionId);
            stringOrNull(g, "USER_ID", s.userId);
            stringOrNull(g, "USER_SEGMENT", s.userSegment);
            stringOrNull(g, "SESSION_STATE", s.sessionState);
            g.writeNumberField("EVENTS_COUNT", s.eventsCount);
            g.writeNumberField("PAGES_VIEWED", s.pagesViewed);
            g.writeNumberField("PRODUCTS_VIEWED", s.productsViewed);
            g.writeFieldName("ITEMS_IN_CART");
            if (s.hasItemsInCart) {
                g.writeNumber(s.itemsInCart);
            } else {
                g.writeNull();
            }
            g.writeFieldName("CART_VALUE");
            if (s.hasCartValue) {
                g.writeNumber(s.cartValue);
            } else {
                g.writeNull();
            }
            g.writeNumberField("PURCHASE_COUNT", s.purchaseCount);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private static void stringOrNull(JsonGenerator g, String name, String value) throws IOException {
        if (value == null) {
            g.writeNullField(name);
        } else {
            g.writeStringField(name, value);
        }
    }
}
