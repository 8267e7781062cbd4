"""Services for tests and examples: a private PostgreSQL cluster and a noida-db Kafka
broker on free loopback ports, SQL, and MNIST rows loaded as the blog's mnist2sql does."""
from ._tensorcdc import Broker, LocalPostgres, execute, load_mnist, query

__all__ = ["Broker", "LocalPostgres", "execute", "load_mnist", "query"]
