// `category-interest`: which product categories a session looks at. Per
// session: product views, how many categories, and the category viewed
// most (ties: the first in alphabetical order) with its views. The stock
// pipeline has nothing like it; pipelines/category-interest.toml runs it.
import { aggregator } from "weir-plugin-sdk";

export const aggregating = aggregator({
  reads: ["event_type", "product_category"],
  stateVersion: 1,
  outputSchema: {
    type: "record",
    name: "CategoryInterest",
    fields: [
      { name: "PRODUCT_VIEWS", type: "long" },
      { name: "CATEGORIES_VIEWED", type: "long" },
      { name: "TOP_CATEGORY", type: ["null", "string"], default: null },
      { name: "TOP_CATEGORY_VIEWS", type: "long" },
    ],
  },

  // Views per category: a plain object, stored as JSON by the SDK.
  initial: () => ({ product_views: 0, views: {} }),

  apply(state, event) {
    const eventType = event.string("event_type");
    const category = event.string("product_category");
    if (eventType !== "product_viewed") return;
    state.product_views += 1;
    if (category !== null) state.views[category] = (state.views[category] ?? 0) + 1;
  },

  row(_key, state) {
    const ranked = Object.entries(state.views).sort(
      ([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0),
    );
    const [top, topViews] = ranked[0] ?? [null, 0];
    return {
      PRODUCT_VIEWS: state.product_views,
      CATEGORIES_VIEWED: ranked.length,
      TOP_CATEGORY: top,
      TOP_CATEGORY_VIEWS: topViews,
    };
  },
});
