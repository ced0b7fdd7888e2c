# Builds either image: --build-arg BINARY=manager (the operator) or BINARY=agent (the member agent).
FROM golang:1.26 AS build
ARG BINARY=manager
ARG VERSION=v0.1.0
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY apis/ apis/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/fleetmesh/fleetmesh/internal/version.Version=${VERSION}" \
    -o /out/app ./cmd/${BINARY}

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
