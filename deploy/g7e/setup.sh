#!/usr/bin/env bash
# ComfyUI + ComfyUI-StreamVAE on an AWS g7e.2xlarge (1x RTX PRO 6000 Blackwell, 96 GB), Ubuntu with the NVIDIA driver
# (e.g. the Deep Learning Base AMI). Idempotent: run it again to resume downloads or pick up a new pack version.
#
#   deploy/g7e/setup.sh --dry-run          print every step, change nothing
#   deploy/g7e/setup.sh                    do it (sudo for packages and the systemd unit)
#   deploy/g7e/setup.sh --models wan22_14b_t2v,decode_only --prefix /opt/comfy
#   deploy/g7e/setup.sh --only models      re-run some steps: driver,packages,venv,comfyui,pack,models,service
#
# ComfyUI has no authentication, so the service listens on 127.0.0.1 only; reach it through the SSH tunnel the
# script prints at the end, never by opening port 8188 in the security group.
set -euo pipefail

COMFYUI_REPO="https://github.com/comfyanonymous/ComfyUI.git"
# The newest ComfyUI release the pack is tested against (v0.33.0); COMFYUI_COMMIT=<sha> picks another tested one
# (v0.3.64: a125cd84b054a57729b5eecab930ca9408719832).
COMFYUI_COMMIT="${COMFYUI_COMMIT:-2f35f4a08176d993cded35dac3332be4f7287f41}"
TORCH_INDEX="https://download.pytorch.org/whl/cu128"        # Blackwell (sm_120) needs CUDA 12.8+ wheels
PORT=8188
HF_ENDPOINT="${HF_ENDPOINT:-https://huggingface.co}"      # a mirror, as huggingface_hub reads it
STEPS="driver,packages,venv,comfyui,pack,models,service"
PACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODELS_TSV="$PACK_DIR/workflows/models.tsv"

DRY_RUN=0
PREFIX="$HOME/comfy"
WORKFLOWS="all"
SERVICE_USER="${SUDO_USER:-$(id -un)}"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo
    echo "options: --dry-run  --prefix DIR (default ~/comfy)  --models all|NAME[,NAME] (example_workflows/*.json names)"
    echo "         --port N (default 8188)  --user NAME (the service's user, default $SERVICE_USER)"
    echo "         --only STEP[,STEP] (of $STEPS)   HF_ENDPOINT=URL for a Hugging Face mirror"
    echo "         COMFYUI_COMMIT=SHA for another tested ComfyUI release (default $COMFYUI_COMMIT, v0.33.0)"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --prefix) PREFIX="$2"; shift ;;
        --models) WORKFLOWS="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --user) SERVICE_USER="$2"; shift ;;
        --only) STEPS="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

for step in ${STEPS//,/ }; do
    case "$step" in
        driver|packages|venv|comfyui|pack|models|service) ;;
        *) echo "unknown step in --only: $step (steps: driver,packages,venv,comfyui,pack,models,service)" >&2; exit 2 ;;
    esac
done

VENV="$PREFIX/venv"
COMFYUI="$PREFIX/ComfyUI"
PYTHON="$VENV/bin/python"
UNIT=/etc/systemd/system/comfyui.service

# --------------------------------------------------------------------------- helpers

step() { printf '\n== %s\n' "$*"; }

# Run a command, or only show it with --dry-run. Arguments are printed shell-quoted so they can be pasted.
run() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

as_root() {
    if [[ $(id -u) == 0 ]]; then run "$@"; else run sudo "$@"; fi
}

die() { echo "error: $*" >&2; exit 1; }

# --------------------------------------------------------------------------- steps

check_driver() {
    step "NVIDIA driver"
    if [[ $DRY_RUN == 1 ]]; then
        run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        return
    fi
    command -v nvidia-smi >/dev/null ||
        die "nvidia-smi not found: launch from an AMI with the NVIDIA driver (Deep Learning Base AMI)" \
            "or install it (driver >= 570 for Blackwell)."
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader ||
        die "nvidia-smi failed: the driver is installed but not loaded (reboot after installing it)."
}

install_system_packages() {
    step "System packages"
    as_root apt-get update -q
    as_root apt-get install -y -q git python3-venv python3-pip curl
}

make_venv() {
    step "Python virtual environment in $VENV"
    [[ -x $PYTHON ]] || run python3 -m venv "$VENV"
    run "$PYTHON" -m pip install -q --upgrade pip
    run "$PYTHON" -m pip install -q torch torchvision torchaudio --index-url "$TORCH_INDEX"
}

install_comfyui() {
    step "ComfyUI at $COMFYUI_COMMIT"
    [[ -d $COMFYUI/.git ]] || run git clone -q "$COMFYUI_REPO" "$COMFYUI"
    run git -C "$COMFYUI" fetch -q origin "$COMFYUI_COMMIT"
    run git -C "$COMFYUI" checkout -q "$COMFYUI_COMMIT"
    run "$PYTHON" -m pip install -q -r "$COMFYUI/requirements.txt"
}

install_pack() {
    step "ComfyUI-StreamVAE from $PACK_DIR"
    run ln -sfn "$PACK_DIR" "$COMFYUI/custom_nodes/ComfyUI-StreamVAE"
    # The pack's requirements never include torch: it uses ComfyUI's.
    run "$PYTHON" -m pip install -q -r "$PACK_DIR/requirements.txt"
}

# The models the chosen workflows use, from workflows/models.tsv: "folder file url" lines.
chosen_models() {
    awk -F'\t' -v want="$WORKFLOWS" '
        /^#/ || NF < 4 { next }
        want == "all" { print $1, $2, $3; next }
        { n = split(want, names, ","); m = split($4, used, ",")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) if (names[i] == used[j]) { print $1, $2, $3; next } }
    ' "$MODELS_TSV"
}

# Hugging Face's tree API lists each LFS file's SHA-256 and size: "sha256 size" for a resolve URL.
expected_checksum() {
    local url=$1 repo path folder
    repo=$(sed -E 's#https://huggingface.co/([^/]+/[^/]+)/resolve/main/.*#\1#' <<<"$url")
    path=$(sed -E 's#https://huggingface.co/[^/]+/[^/]+/resolve/main/##' <<<"$url")
    folder=$(dirname "$path")
    curl -fsSL "$HF_ENDPOINT/api/models/$repo/tree/main/$folder" | python3 -c '
import json, sys
path = sys.argv[1]
for entry in json.load(sys.stdin):
    if entry.get("path") == path and entry.get("lfs"):
        print(entry["lfs"]["oid"], entry["lfs"]["size"])
' "$path"
}

download_model() {
    local folder=$1 name=$2 url=$3 target download_url expected sha size actual
    target="$COMFYUI/models/$folder/$name"
    download_url="${url/https:\/\/huggingface.co/$HF_ENDPOINT}"
    if [[ $DRY_RUN == 1 ]]; then
        echo "+ expected SHA-256 and size of $name from $HF_ENDPOINT/api/models/.../tree/main/..."
        run curl -fL --retry 5 -C - -o "$target.part" "$download_url"
        echo "+ sha256sum $target.part  # must equal the expected SHA-256, else the download is removed"
        run mv "$target.part" "$target"
        return
    fi
    expected=$(expected_checksum "$url") ||
        die "could not read $name's checksum from Hugging Face (network, or the file moved: see workflows/models.md)."
    [[ -n $expected ]] || die "Hugging Face lists no $name at $url: check workflows/models.tsv."
    read -r sha size <<<"$expected"
    if [[ -f $target && $(stat -c %s "$target") == "$size" && -f "$target.sha256" ]] &&
        [[ $(cat "$target.sha256") == "$sha" ]]; then
        echo "$name: present, verified earlier"
        return
    fi
    mkdir -p "$(dirname "$target")"
    curl -fL --retry 5 -C - -o "$target.part" "$download_url"
    actual=$(sha256sum "$target.part" | cut -d' ' -f1)
    if [[ $actual != "$sha" ]]; then
        rm -f "$target.part"
        die "$name: SHA-256 $actual, Hugging Face says $sha; the download was removed, run the script again."
    fi
    mv "$target.part" "$target"
    echo "$sha" >"$target.sha256"
    echo "$name: $size bytes, SHA-256 verified"
}

download_models() {
    step "Models for: $WORKFLOWS (workflows/models.tsv; checksums from Hugging Face)"
    local folder name url count=0
    while read -r folder name url; do
        download_model "$folder" "$name" "$url"
        count=$((count + 1))
    done < <(chosen_models)
    [[ $count -gt 0 ]] || die "no models listed for '$WORKFLOWS': use all or names of example_workflows/*.json."
}

# --highvram keeps the models on the GPU between runs: both 14B fp8 experts (~14 GB each), umt5 and the VAE fit
# in 96 GB, so a second prompt doesn't reload them from disk.
service_unit() {
    cat <<EOF
[Unit]
Description=ComfyUI (with ComfyUI-StreamVAE), loopback only
After=network-online.target

[Service]
User=$SERVICE_USER
WorkingDirectory=$COMFYUI
Environment=PYTHONUNBUFFERED=1
ExecStart=$PYTHON main.py --listen 127.0.0.1 --port $PORT --highvram --disable-auto-launch
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
}

install_service() {
    step "systemd unit $UNIT (127.0.0.1:$PORT only: ComfyUI has no authentication)"
    if [[ $DRY_RUN == 1 ]]; then
        echo "+ write $UNIT:"
        service_unit | sed 's/^/    /'
    else
        service_unit | as_root tee "$UNIT" >/dev/null
    fi
    as_root systemctl daemon-reload
    as_root systemctl enable comfyui.service
    as_root systemctl restart comfyui.service
}

wait_until_serving() {
    step "Waiting for ComfyUI on 127.0.0.1:$PORT"
    if [[ $DRY_RUN == 1 ]]; then
        run curl -fsS "http://127.0.0.1:$PORT/system_stats"
        return
    fi
    for _ in $(seq 120); do
        if curl -fsS "http://127.0.0.1:$PORT/system_stats" >/dev/null 2>&1; then
            echo "serving"
            return
        fi
        sleep 1
    done
    die "ComfyUI did not answer within 120 s: journalctl -u comfyui -n 50"
}

print_tunnel() {
    step "Use it from your machine"
    cat <<EOF
ComfyUI listens on this instance's loopback only. From your machine, open a tunnel:

    ssh -i YOUR_KEY.pem -N -L $PORT:127.0.0.1:$PORT ubuntu@INSTANCE_PUBLIC_DNS

then browse http://127.0.0.1:$PORT (drag in example_workflows/*.json), or queue headless:

    python -m streamvae run example_workflows/wan22_14b_t2v.json --server http://127.0.0.1:$PORT --prompt "..." --out out/

Logs: journalctl -u comfyui -f
EOF
}

# Whether STEP is among those asked for with --only (all by default).
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

main() {
    [[ -f $MODELS_TSV ]] || die "$MODELS_TSV is missing: run this script from a checkout of ComfyUI-StreamVAE."
    [[ $DRY_RUN == 1 ]] && echo "dry run: nothing is changed; every step is printed"
    if wanted driver; then check_driver; fi
    if wanted packages; then install_system_packages; fi
    if wanted venv; then make_venv; fi
    if wanted comfyui; then install_comfyui; fi
    if wanted pack; then install_pack; fi
    if wanted models; then download_models; fi
    if wanted service; then
        install_service
        wait_until_serving
        print_tunnel
    fi
}

main
