"""The columns of the CSV formats `vitrine import` reads (engine.ingest.importer), in a module of
their own so that the command's help can name them without loading the importer's models."""

ITEM_COLUMNS = ("item_id", "title", "category", "brand", "price", "in_stock")
EVENT_COLUMNS = ("timestamp", "visitor_id", "customer_id", "event_type", "item_id", "quantity", "price")
