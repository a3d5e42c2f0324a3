package weir.peer.sessionstats;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;

/**
 * The fields of one input event that the aggregate reads. Everything else in
 * the event is skipped (but must still be well-formed JSON).
 */
final class Event {
    static final byte OTHER = 0;
    static final byte PAGE_VIEW = 1;
    static final byte PRODUCT_VIEWED = 2;
    static final byte PURCHASE = 3;

    /** One of {@link #OTHER}, {@link #PAGE_VIEW}, {@link #PRODUCT_VIEWED}, {@link #PURCHASE}. */
    final byte type;
    final String userId;
    final String userSegment;
    final String sessionState;
    final boolean hasCartItemCount;
    final long cartItemCount;
    final boolean hasCartTotal;
    final double cartTotal;

    Event(byte type, String userId, String userSegment, String sessionState,
          boolean hasCartItemCount, long cartItemCount, boolean hasCartTotal, double cartTotal) {
        this.type = type;
        this.userId = userId;
        this.userSegment = userSegment;
        this.sessionState = sessionState;
        this.hasCartItemCount = hasCartItemCount;
        this.cartItemCount = cartItemCount;
        this.hasCartTotal = hasCartTotal;
        this.cartTotal = cartTotal;
    }

    /** Why a value is not a session event. */
    static final class MalformedException extends Exception {
        private static final long serialVersionUID = 1L;

        MalformedException(String message) {
            super(message, null, false, false);
        }
    }

    private static final JsonFactory JSON = JsonFactory.builder().build();

    private static final int F_EVENT_TYPE = 1;
    private static final int F_USER_ID = 2;
    private static final int F_USER_SEGMENT = 4;
    private static final int F_SESSION_STATE = 8;
    private static final int F_CART_ITEM_COUNT = 16;
    private static final int F_CART_TOTAL = 32;

    /**
     * Parses one event. The rule is weir's: the value must be one JSON object
     * (nothing after it); {@code event_type}, {@code user_id},
     * {@code user_segment} and {@code session_state} must be strings or null,
     * {@code cart_item_count} an integer that fits 64 bits or null,
     * {@code cart_total} a finite number or null; each of these at most once.
     * Absent fields count as null; other fields are not inspected beyond syntax.
     */
    static Event parse(byte[] value) throws MalformedException {
        if (value == null) {
            throw new MalformedException("null value");
        }
        try (JsonParser p = JSON.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new MalformedException("not a JSON object");
            }
            int seen = 0;
            byte type = OTHER;
            String userId = null;
            String userSegment = null;
            String sessionState = null;
            boolean hasCount = false;
            long count = 0;
            boolean hasTotal = false;
            double total = 0;
            String name;
            while ((name = p.nextFieldName()) != null) {
                JsonToken t = p.nextToken();
                int field;
                switch (name) {
                    case "event_type":
                        field = F_EVENT_TYPE;
                        if (t == JsonToken.VALUE_STRING) {
                            type = eventType(p);
                        } else if (t != JsonToken.VALUE_NULL) {
                            throw wrongType(name, t);
                        }
                        break;
                    case "user_id":
                        field = F_USER_ID;
                        userId = string(p, name, t);
                        break;
                    case "user_segment":
                        field = F_USER_SEGMENT;
                        userSegment = string(p, name, t);
                        break;
                    case "session_state":
                        field = F_SESSION_STATE;
                        sessionState = string(p, name, t);
                        break;
                    case "cart_item_count":
                        field = F_CART_ITEM_COUNT;
                        if (t == JsonToken.VALUE_NUMBER_INT) {
                            JsonParser.NumberType nt = p.getNumberType();
                            if (nt != JsonParser.NumberType.INT && nt != JsonParser.NumberType.LONG) {
                                throw new MalformedException("cart_item_count out of 64-bit range");
                            }
                            hasCount = true;
                            count = p.getLongValue();
                        } else if (t != JsonToken.VALUE_NULL) {
                            throw wrongType(name, t);
                        }
                        break;
                    case "cart_total":
                        field = F_CART_TOTAL;
                        if (t == JsonToken.VALUE_NUMBER_FLOAT || t == JsonToken.VALUE_NUMBER_INT) {
                            total = p.getDoubleValue();
                            if (!Double.isFinite(total)) {
                                throw new MalformedException("cart_total out of range");
                            }
                            hasTotal = true;
                        } else if (t != JsonToken.VALUE_NULL) {
                            throw wrongType(name, t);
                        }
                        break;
                    default:
                        p.skipChildren();
                        continue;
                }
                if ((seen & field) != 0) {
                    throw new MalformedException("duplicate field " + name);
                }
                seen |= field;
            }
            if (p.nextToken() != null) {
                throw new MalformedException("trailing data after the JSON object");
            }
            return new Event(type, userId, userSegment, sessionState, hasCount, count, hasTotal, total);
        } catch (IOException e) {
            // JsonParseException and friends: not well-formed JSON.
            String why = e instanceof JsonProcessingException ? ((JsonProcessingException) e).getOriginalMessage() : e.getMessage();
            throw new MalformedException("invalid JSON: " + why);
        }
    }

    private static String string(JsonParser p, String name, JsonToken t) throws IOException, MalformedException {
        if (t == JsonToken.VALUE_STRING) {
            return p.getText();
        }
        if (t == JsonToken.VALUE_NULL) {
            return null;
        }
        throw wrongType(name, t);
    }

    /** The counted event types, compared in the parser's buffer without making a String. */
    private static byte eventType(JsonParser p) throws IOException {
        char[] text = p.getTextCharacters();
        int off = p.getTextOffset();
        int len = p.getTextLength();
        if (is(text, off, len, "page_view")) {
            return PAGE_VIEW;
        }
        if (is(text, off, len, "product_viewed")) {
            return PRODUCT_VIEWED;
        }
        if (is(text, off, len, "purchase")) {
            return PURCHASE;
        }
        return OTHER;
    }

    private static boolean is(char[] text, int off, int len, String expected) {
        if (len != expected.length()) {
            return false;
        }
        for (int i = 0; i < len; i++) {
            if (text[off + i] != expected.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    private static MalformedException wrongType(String name, JsonToken t) {
        return new MalformedException(name + " has the wrong type (" + t + ")");
    }
}
