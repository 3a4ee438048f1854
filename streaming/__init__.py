"""Scale-out transport: Kafka producer for the API and faust workers that run engine/ code."""
