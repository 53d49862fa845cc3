#!/usr/bin/env bash
# The HTTP/JSON API of the inference service with curl. URL defaults to the local service's HTTP port.
#   URL=http://127.0.0.1:8054 TOKEN=... examples/http_curl.sh [FILTER]
set -euo pipefail
URL="${URL:-http://127.0.0.1:8054}"
FILTER="${1:-uplifting}"
auth=()
if [[ -n "${TOKEN:-}" ]]; then auth=(-H "Authorization: Bearer ${TOKEN}"); fi

curl -fsS "${auth[@]}" "$URL/v1/models"; echo
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' "$URL/v1/score" -d @- <<JSON; echo
{"article": {"title": "Community garden feeds 300 families",
             "text": "Volunteers turned an empty lot into a garden that now feeds 300 families every week."},
 "filters": ["${FILTER}"]}
JSON
