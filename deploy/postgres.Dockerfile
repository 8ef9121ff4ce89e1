# PostgreSQL for the compose fleet (deploy/compose.yaml): Debian's postgresql package on the same local
# base image as convd and nginx, so it builds where no registry is reachable (deploy/test.sh makes the
# base with debootstrap). Where Docker Hub is reachable, `image: postgres:15` works as well: it reads the
# same POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD_FILE and keeps its data in the same place.
FROM debian:bookworm-slim
# The package's postinst creates a cluster "main" in /var/lib/postgresql/15: ours is made on the volume
# at the first start instead (convd-postgres), so that one is removed in the same layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15 /etc/postgresql/15 \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/convd-postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    POSTGRES_USER=convd \
    POSTGRES_DB=convd
USER postgres
# A new named volume copies this directory's owner (postgres) and mode 0700, which initdb wants.
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, a checkpoint is written, exit 0.
STOPSIGNAL SIGINT
HEALTHCHECK --interval=2s --timeout=5s --start-period=60s --retries=5 \
  CMD ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
ENTRYPOINT ["/usr/local/bin/convd-postgres"]
