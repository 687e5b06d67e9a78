"""Job-row logic the API and the workers both use: liveness, reaping, the Celery client.

Nothing here imports torch or any other room (api, services, worker).
"""
