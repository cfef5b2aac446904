# Test-only stand-in for redis:7.2 (Debian bookworm's redis-server 7.0). Same contract as
# the official image: redis-server and redis-cli on PATH, WORKDIR and VOLUME /data, an
# entrypoint that drops to the redis user, protected mode off by default.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir /data && chown redis:redis /data
COPY redis-server /usr/local/bin/redis-server
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/redis-server /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
