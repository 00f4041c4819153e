# One image for the three deployables (config/500-deployments.yaml picks the entrypoint by args):
#   kbroker ingress | kbroker filter | kbroker controller
# Build: docker build -t kbroker:dev .   (Tilt's docker_build does the same in cluster mode)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first (cached across source edits), then the code.
COPY pyproject.toml README.md ./
COPY core ./core
COPY ingress ./ingress
COPY filter ./filter
COPY controller ./controller
COPY sources ./sources
COPY examples ./examples
COPY kbroker ./kbroker
RUN pip install .

# The distroless-style "nonroot" uid that the Deployments' securityContext expects.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["kbroker"]
CMD ["ingress"]
