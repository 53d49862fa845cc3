#!/usr/bin/env bash
# Call the services with grpcurl (https://github.com/fullstorydev/grpcurl); they serve reflection, so no
# .proto files are needed. TARGET defaults to the local inference service; TOKEN is sent when set.
#   TARGET=127.0.0.1:50054 TOKEN=... examples/grpcurl.sh [FILTER]
set -euo pipefail
TARGET="${TARGET:-127.0.0.1:50054}"
FILTER="${1:-uplifting}"
auth=()
if [[ -n "${TOKEN:-}" ]]; then auth=(-H "authorization: Bearer ${TOKEN}"); fi
tls=(-plaintext)
if [[ -n "${TLS_CA:-}" ]]; then tls=(-cacert "$TLS_CA"); fi

grpcurl "${tls[@]}" "${auth[@]}" "$TARGET" list
grpcurl "${tls[@]}" "${auth[@]}" -d @ "$TARGET" distillery.v1.ScoringService/Score <<JSON
{"article": {"title": "Community garden feeds 300 families",
             "text": "Volunteers turned an empty lot into a garden that now feeds 300 families every week."},
 "filters": [{"name": "${FILTER}"}]}
JSON
