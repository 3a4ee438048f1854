"""The ``vitrine`` command (``main.py`` builds its arguments; one module per command group).

    vitrine demo                      import the demo shop, train, serve (the newcomer's command)
    vitrine serve [--host --port --workers]
    vitrine import [--items items.csv] [--events events.csv]
    vitrine train                     train, compare with the served model on held-out data, promote if not worse
    vitrine evaluate (--events events.csv [--items items.csv] | --dataset taobao|online-retail)
    vitrine worker                    (Kafka mode) apply the events topic to the profiles
    vitrine replay [--reset]          apply the event log past its checkpoint; --reset: rebuild everything
    vitrine bench-stream              freshness and events/s, embedded and Kafka
    vitrine bench [--seconds --connections --workers 1 2 --cluster]
    vitrine check-rules rules.yaml    validate a merchandising rules file

Without ``VITRINE_REDIS_URL`` the commands of one data dir share a local redis-server that keeps
its data in ``$VITRINE_DATA_DIR/redis``, started by the first and stopped by the last: that is the
embedded default. Only ``serve`` (demo, serve) imports the HTTP app; the other commands use
engine/ and models/.
"""
