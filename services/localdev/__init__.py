"""Running tokenrelay on one machine, for development: not a part of the deployed system.

``kafka`` fetches Apache Kafka's jars with Maven and runs a local KRaft broker or
cluster; ``stack`` is ``tokenrelay up`` (the broker and every part as child
processes); ``supervisor`` restarts those children with backoff. The services
never import this package: in docker-compose and k8s the broker is a real one.
"""
