"""Word lists the pretraining corpus builds its APIs, values and sentences from.

Explicit tables (no external word list), so a seed gives the same corpus on every machine. Tool names
are ``verb_noun[_qualifier]`` over these lists; a name that equals a sandbox tool is redrawn
(:mod:`tl_lightning.synthetic.pretrain.apis`), so words shared with the quick-start domains
(``get``, ``list``) are fine, whole quick-start names never appear.
"""

from __future__ import annotations

__all__ = ["ENUMS", "NOUNS", "PARAMS", "QUALIFIERS", "SYLLABLES", "TEXT_WORDS", "VERBS"]

VERBS = (
    "get", "fetch", "list", "find", "search", "create", "update", "remove", "check", "compute", "send", "reserve",
    "register", "schedule", "archive", "export", "import", "validate", "track", "assign", "rename", "lookup", "count",
    "estimate", "submit", "approve", "reset", "publish", "sync", "scan", "rate", "tag", "merge", "query", "resolve",
    "transfer", "open", "close", "renew", "measure", "notify", "review", "replace", "restore", "upload",
)

NOUNS = (
    "invoice", "parcel", "ticket", "sensor", "patient", "recipe", "course", "student", "vehicle", "route", "warehouse",
    "order", "customer", "playlist", "song", "album", "article", "review", "account", "payment", "shipment", "device",
    "project", "member", "volunteer", "garden", "plant", "library", "loan", "museum", "exhibit", "match", "player",
    "team", "league", "lesson", "workshop", "license", "permit", "contract", "supplier", "product", "coupon", "survey",
    "podcast", "episode", "bike", "locker", "room", "badge", "donation", "grant", "trip", "ferry", "meal", "pet",
    "vaccine", "claim", "policy", "budget", "expense", "asset", "repository", "commit", "branch", "issue", "build",
    "server", "backup", "domain", "certificate", "queue", "job", "report", "chart", "dataset", "metric", "alarm",
    "shift", "employee", "candidate", "interview", "tenant", "lease", "meter", "harvest", "field", "herd", "crop",
)

QUALIFIERS = (
    "status", "details", "history", "summary", "owner", "price", "total", "count", "items", "notes", "schedule",
    "location", "score", "rating", "tags", "limits", "balance", "level", "size", "usage", "logs", "comments",
    "members", "stats", "timeline", "version", "settings", "permissions", "links", "photos", "quota", "forecast",
)

#: Enumerations: a parameter of kind ``enum:<key>`` takes one of these values.
ENUMS = {
    "priority": ("low", "normal", "high", "urgent"),
    "state": ("open", "pending", "closed", "archived", "draft"),
    "region": ("north", "south", "east", "west", "central"),
    "order": ("name", "date", "size", "score", "newest", "oldest"),
    "frequency": ("hourly", "daily", "weekly", "monthly", "yearly"),
    "color": ("red", "green", "blue", "amber", "violet", "teal", "black", "white"),
    "format": ("csv", "json", "pdf", "xml", "html", "txt"),
    "mode": ("fast", "safe", "full", "quick", "strict", "lenient"),
    "channel": ("email", "sms", "push", "post", "phone"),
    "language": ("english", "french", "german", "spanish", "italian", "dutch", "polish"),
}

#: Catalog parameters: (name, JSON type, value kind, description). Tools also get ``<noun>_id`` and ``<noun>_name``.
PARAMS = (
    ("limit", "integer", "count", "Maximum number of results."),
    ("quantity", "integer", "count", "How many units."),
    ("year", "integer", "year", "The calendar year."),
    ("level", "integer", "small", "Level from 1 to 9."),
    ("page", "integer", "small", "Result page to return."),
    ("reference", "integer", "number", "A numeric reference."),
    ("amount", "number", "money", "Amount of money."),
    ("weight", "number", "measure", "Weight in kilograms."),
    ("distance", "number", "measure", "Distance in kilometres."),
    ("threshold", "number", "ratio", "Threshold value."),
    ("start_date", "string", "date", "First day, as YYYY-MM-DD."),
    ("end_date", "string", "date", "Last day, as YYYY-MM-DD."),
    ("due_date", "string", "date", "Due day, as YYYY-MM-DD."),
    ("since", "string", "date", "Only entries after this day (YYYY-MM-DD)."),
    ("priority", "string", "enum:priority", "Priority level."),
    ("state", "string", "enum:state", "Lifecycle state."),
    ("region", "string", "enum:region", "Region of service."),
    ("sort_order", "string", "enum:order", "How to sort the results."),
    ("frequency", "string", "enum:frequency", "How often it repeats."),
    ("color", "string", "enum:color", "Display color."),
    ("file_format", "string", "enum:format", "Output file format."),
    ("mode", "string", "enum:mode", "Processing mode."),
    ("channel", "string", "enum:channel", "Delivery channel."),
    ("language", "string", "enum:language", "Language of the text."),
    ("labels", "array", "tags", "Labels to attach."),
    ("codes", "array", "ints", "Numeric codes."),
    ("recipients", "array", "people", "People to include."),
    ("owner", "string", "person", "Full name of the owner."),
    ("author", "string", "person", "Full name of the author."),
    ("contact_person", "string", "person", "Full name of the contact person."),
    ("note", "string", "text", "A free-text note."),
    ("description", "string", "text", "A short description."),
    ("title", "string", "title", "The title."),
    ("email_address", "string", "email", "An email address."),
    ("site", "string", "place", "Name of the site."),
    ("postal_code", "string", "digits", "Postal code."),
)

#: Syllables of invented person and place names: values no pretrained pool contains, so the model must copy.
SYLLABLES = (
    "ka", "lo", "mir", "ves", "san", "to", "ri", "na", "bel", "dor", "ta", "fen", "gal", "mo", "ru", "sel", "vi",
    "zan", "qui", "pel", "ar", "on", "is", "ten", "bra", "cul", "dri", "el", "fa", "gor", "hal", "jon", "kel", "lu",
    "mar", "nes", "ol", "pra", "ros", "sti", "tur", "ul", "vor", "wen", "yas", "zel",
)

#: Common English words for free-text values and titles.
TEXT_WORDS = (
    "morning", "river", "quiet", "yellow", "paper", "garden", "window", "silver", "music", "winter", "summer", "bright",
    "little", "green", "forest", "stone", "market", "bridge", "cloud", "evening", "simple", "orange", "harbor", "light",
    "coffee", "letter", "island", "rapid", "gentle", "north", "engine", "pocket", "ladder", "candle", "valley", "copper",
    "meeting", "draft", "plan", "review", "kitchen", "station", "signal", "corner", "family", "friday", "monday",
    "weekend", "printer", "backup", "budget", "first", "second", "final", "new", "old", "blue", "red", "open", "shared",
    "spare", "extra", "urgent", "daily", "team", "client", "office", "school", "city", "road", "table", "chair",
)
