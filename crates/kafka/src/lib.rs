//! Everything that speaks Kafka (issue 4): the producer sink and the readers.
