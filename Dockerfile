# tickcast: the embedded system (`tickcast up`) by default; the same image runs
# `tickcast flow` and `tickcast api` in the distributed compose file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TICKCAST_API_HOST=0.0.0.0 \
    TICKCAST_CLICKHOUSE_URL=chdb:///data/clickhouse \
    MODEL_STORE_DIR=/data/models \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
# librdkafka ships inside the confluent-kafka wheel; libgomp is needed by onnxruntime/numba.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY tickcast ./tickcast
COPY dataflows ./dataflows
COPY models ./models
COPY sql ./sql
COPY api ./api
RUN pip install . && useradd --create-home tickcast && mkdir -p /data && chown tickcast /data

USER tickcast
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"
ENTRYPOINT ["tickcast"]
CMD ["up"]
