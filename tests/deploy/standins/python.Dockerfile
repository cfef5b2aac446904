# Test-only stand-in for python:3.11-slim (Debian bookworm's Python 3.11), tagged with that
# name only while the test runs builds. Same contract as the official image for
# deploy/Dockerfile: `python` and `pip` on PATH, `pip install` as root into /usr/local.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python-is-python3 \
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
