# Test-only base: Debian bookworm from debootstrap (imported as ROOTFS) plus this machine's
# package index configuration and CA certificates, so apt-get and pip inside every build
# reach the same mirrors as the machine running the test. Not a published image.
ARG ROOTFS
FROM ${ROOTFS}
# Like Debian's official images: no service starts during installs (there is no init),
# no documentation or locales.
COPY policy-rc.d /usr/sbin/policy-rc.d
COPY dpkg-slim /etc/dpkg/dpkg.cfg.d/docker-slim
COPY host/apt/ /etc/apt/
COPY host/keyrings/ /usr/share/keyrings/
COPY host/ca/ /usr/local/share/ca-certificates/
COPY host/pip.conf /etc/pip.conf
RUN chmod 0755 /usr/sbin/policy-rc.d \
 && rm -f /etc/apt/sources.list.d/.keep /etc/apt/apt.conf.d/.keep /etc/apt/keyrings/.keep \
        /usr/share/keyrings/.keep /usr/local/share/ca-certificates/.keep \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && update-ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["bash"]
