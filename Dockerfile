# segmetro as one image for cron, Kubernetes Indexed Jobs and AWS Batch array jobs.
#   docker build -t segmetro .
#   docker run --rm -e METRONOME_BEARER_TOKEN -v /data:/data:ro segmetro send /data/day.jsonl
# Cloud inputs (s3://, gs://) are not read yet; when they are, their extras go in the install.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/segmetro
COPY pyproject.toml README.md ./
COPY segmetro ./segmetro
# hadolint ignore=DL3013
RUN pip install ".[redis]" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin segmetro

USER 10001
WORKDIR /home/segmetro
ENTRYPOINT ["segmetro"]
CMD ["--help"]
