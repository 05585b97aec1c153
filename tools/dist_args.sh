# Sourced by tools/dist_train.sh and tools/dist_test.sh: checks of their
# arguments, so that a bad one ends in one `error: ...` line and exit status 1
# (torchrun's own answer to `--nproc_per_node=0` is a bare AssertionError).

# require_count NAME VALUE MIN: VALUE must be an integer >= MIN.
require_count() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || (( 10#$2 < $3 )); then
        echo "error: $1 must be an integer >= $3, got '$2'" >&2
        exit 1
    fi
}

