package weir.peer.sessionstats;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/** One session's running aggregate: the nine value columns of the row. */
final class SessionState {
    String userId;
    String userSegment;
    String sessionState;
    long eventsCount;
    long pagesViewed;
    long productsViewed;
    boolean hasItemsInCart;
    long itemsInCart;
    boolean hasCartValue;
    double cartValue;
    long purchaseCount;

    /** Folds one event in: newest non-null strings, counts, maxima. Returns this. */
    SessionState fold(Event e) {
        if (e.userId != null) {
            userId = e.userId;
        }
        if (e.userSegment != null) {
            userSegment = e.userSegment;
        }
        if (e.sessionState != null) {
            sessionState = e.sessionState;
        }
        eventsCount++;
        switch (e.type) {
            case Event.PAGE_VIEW:
                pagesViewed++;
                break;
            case Event.PRODUCT_VIEWED:
                productsViewed++;
                break;
            case Event.PURCHASE:
                purchaseCount++;
                break;
            default:
                break;
        }
        if (e.hasCartItemCount) {
            itemsInCart = hasItemsInCart ? Math.max(itemsInCart, e.cartItemCount) : e.cartItemCount;
            hasItemsInCart = true;
        }
        if (e.hasCartTotal) {
            cartValue = hasCartValue ? Math.max(cartValue, e.cartTotal) : e.cartTotal;
            hasCartValue = true;
        }
        return this;
    }

    // The stored form, version 1:
    //   byte     version (1)
    //   byte     presence flags (USER_ID, USER_SEGMENT, SESSION_STATE, ITEMS_IN_CART, CART_VALUE)
    //   string*  the present strings, in that order (varint length + UTF-8)
    //   varint   EVENTS_COUNT, PAGES_VIEWED, PRODUCTS_VIEWED, PURCHASE_COUNT
    //   varint   ITEMS_IN_CART, zig-zag, if present
    //   8 bytes  CART_VALUE, if present
    // A typical session takes 30-40 bytes.
    private static final int VERSION = 1;
    private static final int HAS_USER_ID = 1;
    private static final int HAS_USER_SEGMENT = 2;
    private static final int HAS_SESSION_STATE = 4;
    private static final int HAS_ITEMS = 8;
    private static final int HAS_CART_VALUE = 16;

    byte[] encode() {
        byte[] user = Codec.utf8(userId);
        byte[] segment = Codec.utf8(userSegment);
        byte[] state = Codec.utf8(sessionState);
        long items = Codec.zigzag(itemsInCart);
        int size = 2 + Codec.stringSize(user) + Codec.stringSize(segment) + Codec.stringSize(state)
                + Codec.varintSize(eventsCount) + Codec.varintSize(pagesViewed)
                + Codec.varintSize(productsViewed) + Codec.varintSize(purchaseCount)
                + (hasItemsInCart ? Codec.varintSize(items) : 0)
                + (hasCartValue ? 8 : 0);
        int flags = (user != null ? HAS_USER_ID : 0)
                | (segment != null ? HAS_USER_SEGMENT : 0)
                | (state != null ? HAS_SESSION_STATE : 0)
                | (hasItemsInCart ? HAS_ITEMS : 0)
                | (hasCartValue ? HAS_CART_VALUE : 0);
        Codec.Writer w = new Codec.Writer(size);
        w.byte1(VERSION);
        w.byte1(flags);
        w.string(user);
        w.string(segment);
        w.string(state);
        w.varint(eventsCount);
        w.varint(pagesViewed);
        w.varint(productsViewed);
        w.varint(purchaseCount);
        if (hasItemsInCart) {
            w.varint(items);
        }
        if (hasCartValue) {
            w.float64(cartValue);
        }
        return w.done();
    }

    static SessionState decode(byte[] bytes) {
        Codec.Reader r = new Codec.Reader(bytes);
        int version = r.byte1();
        if (version != VERSION) {
            throw new IllegalArgumentException("unknown session state version " + version);
        }
        int flags = r.byte1();
        SessionState s = new SessionState();
        if ((flags & HAS_USER_ID) != 0) {
            s.userId = r.string();
        }
        if ((flags & HAS_USER_SEGMENT) != 0) {
            s.userSegment = r.string();
        }
        if ((flags & HAS_SESSION_STATE) != 0) {
            s.sessionState = r.string();
        }
        s.eventsCount = r.varint();
        s.pagesViewed = r.varint();
        s.productsViewed = r.varint();
        s.purchaseCount = r.varint();
        if ((flags & HAS_ITEMS) != 0) {
            s.hasItemsInCart = true;
            s.itemsInCart = Codec.unzigzag(r.varint());
        }
        if ((flags & HAS_CART_VALUE) != 0) {
            s.hasCartValue = true;
            s.cartValue = r.float64();
        }
        r.end();
        return s;
    }

    /** The state store's value serde. */
    static final class StateSerde implements Serde<SessionState>, Serializer<SessionState>, Deserializer<SessionState> {
        @Override
        public byte[] serialize(String topic, SessionState state) {
            return state == null ? null : state.encode();
        }

        @Override
        public SessionState deserialize(String topic, byte[] bytes) {
            return bytes == null ? null : decode(bytes);
        }

        @Override
        public Serializer<SessionState> serializer() {
            return this;
        }

        @Override
        public Deserializer<SessionState> deserializer() {
            return this;
        }

        @Override
        public void configure(java.util.Map<String, ?> configs, boolean isKey) {}

        @Override
        public void close() {}
    }
}
