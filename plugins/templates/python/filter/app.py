"""`{{name}}`: a weir filter. Keeps the events whose `event_type` is one of
the configured ones (`keep = ["purchase"]` by default), drops the others,
and rejects events whose `event_type` is not a string."""

from weir_plugin import Filter, export_filter, reject


class Plugin(Filter):
    # The fields read; the host parses each event once and hands them over.
    reads = ["event_type"]

    def init(self, config):
        keep = config.get("keep", ["purchase"])
        if not isinstance(keep, list):
            reject("bad-config", "`keep` must be a list of event types")
        self.keep = set(keep)

    def filter(self, record):
        return record.string("event_type") in self.keep


# componentize-py exports the class of this name.
Filtering = export_filter(Plugin)
