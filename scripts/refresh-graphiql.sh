#!/usr/bin/env bash
# Refresh the GraphiQL page's vendored assets from the npm registry at the pinned versions.
#
# Usage: scripts/refresh-graphiql.sh   (needs npm and access to the npm registry)
# To move to other versions, change the pins below, run it, and commit the folder it rewrites.
set -euo pipefail
export LC_ALL=C

GRAPHIQL_VERSION=3.8.3
REACT_VERSION=18.3.1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$repo/server/mailflow/api/static/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack checks each tarball against the integrity the registry publishes for it.
pack() {
    local spec="$1" name="${1%@*}"
    local packed filename integrity
    packed="$(cd "$work" && npm pack --json --silent "$spec")"
    filename="$(node -p 'JSON.parse(process.argv[1])[0].filename' "$packed")"
    integrity="$(node -p 'JSON.parse(process.argv[1])[0].integrity' "$packed")"
    mkdir "$work/$name"
    tar -xzf "$work/$filename" -C "$work/$name" --strip-components=1
    echo "$spec  $integrity" >>"$work/packages"
}

pack "graphiql@$GRAPHIQL_VERSION"
pack "react@$REACT_VERSION"
pack "react-dom@$REACT_VERSION"

rm -rf "$target"
mkdir -p "$target"
cp "$work/graphiql/graphiql.min.js" "$work/graphiql/graphiql.min.css" "$target/"
cp "$work/graphiql/LICENSE" "$target/graphiql.LICENSE"
cp "$work/react/umd/react.production.min.js" "$target/"
cp "$work/react/LICENSE" "$target/react.LICENSE"
cp "$work/react-dom/umd/react-dom.production.min.js" "$target/"
cp "$work/react-dom/LICENSE" "$target/react-dom.LICENSE"

{
    echo "GraphiQL for mailflow's /graphql page, served from here so that it works offline."
    echo "Written by scripts/refresh-graphiql.sh; do not edit by hand."
    echo
    echo "Packages (npm registry, with the integrity npm checked):"
    sed 's/^/  /' "$work/packages"
    echo
    echo "Files, copied unchanged:"
    echo "  graphiql.min.js, graphiql.min.css  graphiql's UMD build, which bundles graphql,"
    echo "                                     @graphiql/react, codemirror and their dependencies"
    echo "  react.production.min.js            react/umd/"
    echo "  react-dom.production.min.js        react-dom/umd/"
    echo "  <package>.LICENSE                  each package's LICENSE"
    echo
    echo "The source maps that graphiql.min.js and graphiql.min.css name are left out: only"
    echo "browser developer tools ask for them."
    echo
    echo "sha256:"
    (cd "$target" && sha256sum -- *.js *.css *.LICENSE | sed 's/^/  /')
} >"$target/VERSIONS"

echo "refreshed $target"
