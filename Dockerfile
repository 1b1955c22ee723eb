FROM python:3.11-slim
WORKDIR /srv/hirehook
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY demo ./demo
# A fixed numeric id: Kubernetes can only enforce runAsNonRoot on a numeric USER.
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 hirehook \
    && useradd --system --uid 10001 --gid 10001 hirehook
USER 10001:10001
ENV HIREHOOK_API_HOST=0.0.0.0
EXPOSE 8000
CMD ["hirehook", "api"]
