package weir.peer.categorysales;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HashMap;
import java.util.Map;

/**
 * The product catalog, read once at start from the same PostgreSQL table
 * weir's `products` lookup reads ({@code SELECT product_id, category FROM
 * products}): what weir does with a lookup table.
 */
public final class Catalog {
    /** The category of a product the catalog lacks, or whose category is NULL (weir's `unknown`). */
    static final String UNKNOWN = "uncategorised";

    private final Map<String, String> categories;

    private Catalog(Map<String, String> categories) {
        this.categories = categories;
    }

    /** Reads the table through {@code jdbcUrl} (user and password in the URL). */
    public static Catalog load(String jdbcUrl) throws SQLException {
        Map<String, String> categories = new HashMap<>();
        try (Connection connection = DriverManager.getConnection(jdbcUrl);
             Statement statement = connection.createStatement();
             ResultSet rows = statement.executeQuery("SELECT product_id, category FROM products")) {
            while (rows.next()) {
                String category = rows.getString(2);
                if (category != null) {
                    categories.put(rows.getString(1), category);
                }
            }
        }
        return new Catalog(categories);
    }

    /** The category of {@code productId}. */
    String category(String productId) {
        return categories.getOrDefault(productId, UNKNOWN);
    }

    public int size() {
        return categories.size();
    }
}
