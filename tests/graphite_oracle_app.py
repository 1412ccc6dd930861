"""
Run inside the graphite-web 1.1.10 virtualenv (not the server's): answer
Graphite API requests with graphite-web's own code, in process, through
Django's test client, over the whisper files carbon-cache wrote.

    python graphite_oracle_app.py STORAGE_DIR < requests.json > answers.json

C{requests.json}: C{{"tagged": [paths to register in the tag database],
"requests": [[path, {param: value or [values]}], ...]}}; the answer is one
C{{"status": int, "body": text}} per request.  Every request is a GET, with
C{now} as the request gives it (whisper reads the clock itself to pick an
archive).
"""

import json
import os
import sys
import types


def main():
    storage = os.path.abspath(sys.argv[1])
    os.environ["GRAPHITE_STORAGE_DIR"] = storage
    os.makedirs(os.path.join(storage, "log", "webapp"), exist_ok=True)
    overrides = types.ModuleType("oracle_settings")
    exec(
        "from graphite.settings import *\n"
        "CARBONLINK_HOSTS = []\n"
        "USE_WORKER_POOL = False\n"
        "TIME_ZONE = 'UTC'\n"
        "SECRET_KEY = 'oracle'\n"
        "ALLOWED_HOSTS = ['*']\n"
        "DEFAULT_CACHE_DURATION = 0\n"
        "CACHES = {'default': {'BACKEND': 'django.core.cache.backends.dummy.DummyCache'}}\n",
        overrides.__dict__)
    sys.modules["oracle_settings"] = overrides
    os.environ["DJANGO_SETTINGS_MODULE"] = "oracle_settings"
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)
    from django.test import Client
    from graphite.storage import STORE

    job = json.load(sys.stdin)
    for path in job.get("tagged", []):
        STORE.tagdb.tag_series(path)
    client = Client()
    answers = []
    for path, params in job["requests"]:
        response = client.get(path, params)
        answers.append({"status": response.status_code,
                        "body": response.content.decode("utf-8", "replace")})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
