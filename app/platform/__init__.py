"""The platform every process needs (API, worker, CLI): settings, the database engine, the job
queue, logging, metrics, encryption at rest, the outbound-URL policy, the embedded servers of
the dev loop, ids, errors and the one backoff policy. Imports no layer above it."""
