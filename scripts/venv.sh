# Sourced by demo.sh and test.sh: make .venv if needed and install streamprep (editable) with the extras
# given, only when pyproject.toml or the extras changed since the last install (a stamp in .venv).
ensure_venv() {
    local extras="$1" want stamp=.venv/.streamprep-install
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) ${extras}"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/streamprep ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
        printf '%s' "$want" > "$stamp"
    fi
}
