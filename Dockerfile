# syntax=docker/dockerfile:1
# The sidecar and injector images, built from the repository root:
#
#   docker build -t tandem/sidecar:dev .
#   docker build --build-arg CMD=injector -t tandem/injector:dev .
#
# A static binary on an empty image, run as a non-root user; CA certificates
# for HTTPS trace collectors and the API server.
FROM golang:1.26 AS build
ARG VERSION=dev
ARG CMD=sidecar
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/app ./cmd/${CMD}

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
