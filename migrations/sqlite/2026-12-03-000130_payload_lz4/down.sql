-- PostgreSQL only (how event payloads are compressed); SQLite stores them as they are.
SELECT 1;
