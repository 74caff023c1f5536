# syntax=docker/dockerfile:1
# The sidecar image, built from the repository root:
#
#   docker build -t tandem/sidecar:dev .
#
# A static binary on an empty image, run as a non-root user; CA certificates
# for HTTPS trace collectors.
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sidecar ./cmd/sidecar

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sidecar /sidecar
USER 65532:65532
ENTRYPOINT ["/sidecar"]
