package weir.peer.categorysales;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The items of one input event, as weir's `purchase-items` plugin finds
 * them: a `purchase` event's `items` (each an object with a string
 * `product_id`, a number `price` and an integer `quantity`); any other
 * event has none.
 */
final class Purchase {
    private Purchase() {}

    /** Why a value cannot be read (weir dead-letters such a record). */
    static final class MalformedException extends Exception {
        private static final long serialVersionUID = 1L;

        MalformedException(String message) {
            super(message, null, false, false);
        }
    }

    private static final JsonFactory JSON = JsonFactory.builder().build();

    /** The value's items, each with its category from {@code catalog}. */
    static List<Item> items(byte[] value, Catalog catalog) throws MalformedException {
        if (value == null) {
            throw new MalformedException("null value");
        }
        try (JsonParser p = JSON.createParser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new MalformedException("not a JSON object");
            }
            boolean purchase = false;
            List<Item> items = null;
            String name;
            while ((name = p.nextFieldName()) != null) {
                JsonToken t = p.nextToken();
                if (name.equals("event_type")) {
                    purchase = t == JsonToken.VALUE_STRING && p.getText().equals("purchase");
                } else if (name.equals("items") && t == JsonToken.START_ARRAY) {
                    items = readItems(p, catalog);
                } else {
                    p.skipChildren();
                }
            }
            if (p.nextToken() != null) {
                throw new MalformedException("trailing data after the JSON object");
            }
            if (!purchase) {
                return Collections.emptyList();
            }
            if (items == null) {
                throw new MalformedException("a purchase without `items`");
            }
            return items;
        } catch (IOException e) {
            String why = e instanceof JsonProcessingException ? ((JsonProcessingException) e).getOriginalMessage() : e.getMessage();
            throw new MalformedException("invalid JSON: " + why);
        }
    }

    private static List<Item> readItems(JsonParser p, Catalog catalog) throws IOException, MalformedException {
        List<Item> items = new ArrayList<>(4);
        while (p.nextToken() == JsonToken.START_OBJECT) {
            String product = null;
            double price = Double.NaN;
            long quantity = -1;
            String name;
            while ((name = p.nextFieldName()) != null) {
                JsonToken t = p.nextToken();
                switch (name) {
                    case "product_id":
                        if (t != JsonToken.VALUE_STRING) {
                            throw new MalformedException("an item's product_id is not a string");
                        }
                        product = p.getText();
                        break;
                    case "price":
                        if (t != JsonToken.VALUE_NUMBER_FLOAT && t != JsonToken.VALUE_NUMBER_INT) {
                            throw new MalformedException("an item's price is not a number");
                        }
                        price = p.getDoubleValue();
                        break;
                    case "quantity":
                        if (t != JsonToken.VALUE_NUMBER_INT) {
                            throw new MalformedException("an item's quantity is not an integer");
                        }
                        quantity = p.getLongValue();
                        break;
                    default:
                        p.skipChildren();
                        break;
                }
            }
            if (product == null || Double.isNaN(price) || quantity < 0) {
                throw new MalformedException("an item without a product_id, a price and a quantity");
            }
            items.add(new Item(catalog.category(product), price, quantity));
        }
        if (p.currentToken() != JsonToken.END_ARRAY) {
            throw new MalformedException("`items` is not a list of items");
        }
        return items;
    }
}
