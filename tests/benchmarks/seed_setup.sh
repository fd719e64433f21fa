#!/bin/sh
# Prepares the seed's API for tests/benchmarks/bench_seed.py: a venv with its dependencies (PyPI), Redis
# (Debian), and the `seedbench` database with the seed's schema (its own SQLAlchemy metadata).
#
#   tests/benchmarks/seed_setup.sh SEED_CHECKOUT [SEED_DIR]
#
# SEED_CHECKOUT: the seed's API source (src/ and shared/ of vladmesh/codegen_orchestrator, see
# docs/benchmarks.md for the commit); it is an input, never fetched here. SEED_DIR (default /var/tmp/seed)
# gets the venv. PostgreSQL must answer on 127.0.0.1:5432 as user postgres with trust auth; the script
# only creates or rebuilds the `seedbench` database.
set -eu
CHECKOUT=${1:?usage: seed_setup.sh SEED_CHECKOUT [SEED_DIR]}
SEED_DIR=${2:-/var/tmp/seed}
PG=${SEED_PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}
[ -f "$CHECKOUT/src/main.py" ] && [ -d "$CHECKOUT/shared/models" ] || {
	echo "seed_setup: $CHECKOUT has no src/main.py and shared/models (the seed's API source)" >&2
	exit 2
}

if ! command -v redis-server >/dev/null 2>&1; then
	# no service may start on install: bench_seed starts its own Redis on a free port
	[ -e /usr/sbin/policy-rc.d ] || printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	apt-get install -y -q redis-server
fi

if [ ! -x "$SEED_DIR/.venv/bin/python" ]; then
	mkdir -p "$SEED_DIR"
	python3 -m venv "$SEED_DIR/.venv"
fi
# the seed's services/api/pyproject.toml: fastapi, uvicorn[standard], sqlalchemy, asyncpg, redis[hiredis],
# structlog, pydantic (the rest it lists is not on the benchmarked paths)
"$SEED_DIR/.venv/bin/pip" install -q fastapi 'uvicorn[standard]' 'sqlalchemy[asyncio]' asyncpg \
	'redis[hiredis]' structlog pydantic

psql "$PG" -q -c 'DROP DATABASE IF EXISTS seedbench WITH (FORCE)' -c 'CREATE DATABASE seedbench'
cd "$CHECKOUT"
DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/seedbench "$SEED_DIR/.venv/bin/python" - <<'PY'
import asyncio

from shared.models import Base
from src.database import engine


async def main() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


asyncio.run(main())
print("seedbench: schema created from the seed's metadata")
PY
