"""`{{name}}`: a weir transform. Each event comes out as it came in, with
`funnel_step` added: 1 for browsing (page views, searches, product views),
2 for the cart, 3 for a purchase, 0 for anything else. Events whose
`event_type` is not a string are rejected."""

from weir_plugin import Transform, export_transform

STEPS = {"page_view": 1, "search": 1, "product_viewed": 1, "add_to_cart": 2, "cart_viewed": 2, "purchase": 3}


class Plugin(Transform):
    # The fields read; the host parses each event once and hands them over.
    reads = ["event_type"]

    def transform(self, record, emit):
        step = STEPS.get(record.string("event_type"), 0)  # rejects a non-string
        # The event's own text, with the member added before its closing brace.
        body = record.value.decode("utf-8").rstrip().removesuffix("}").rstrip()
        comma = "" if body.endswith("{") else ","
        emit(f'{body}{comma}"funnel_step":{step}}}', record.key)


# componentize-py exports the class of this name.
Transforming = export_transform(Plugin)
