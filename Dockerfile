FROM python:3.11-slim
WORKDIR /srv/hirehook
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY demo ./demo
RUN pip install --no-cache-dir . && useradd --system hirehook
USER hirehook
ENV HIREHOOK_API_HOST=0.0.0.0
EXPOSE 8000
CMD ["hirehook", "api"]
