# segmetro as one image for cron, Kubernetes Indexed Jobs and AWS Batch array jobs.
#   docker build -t segmetro .
#   docker run --rm -e METRONOME_BEARER_TOKEN -v /data:/data:ro segmetro send /data/day.jsonl
#   docker run --rm -e METRONOME_BEARER_TOKEN -e AWS_REGION segmetro \
#     send s3://bucket/segment-logs/SRC --since 2026-11-01
# With the s3 and gcs extras, archives are read in place; credentials come from the SDKs' chains
# (an IAM role for the pod or instance, Workload Identity, or the environment).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/segmetro
COPY pyproject.toml README.md ./
COPY segmetro ./segmetro
# hadolint ignore=DL3013
RUN pip install ".[redis,s3,gcs]" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin segmetro

USER 10001
WORKDIR /home/segmetro
ENTRYPOINT ["segmetro"]
CMD ["--help"]
