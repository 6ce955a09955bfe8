#!/usr/bin/env bash
# Make the bundled video demo media next to this script (deterministic: same tools, same bytes).
# Needs ffmpeg (libx264, drawtext) and espeak-ng. Run: bash samples/video/make_samples.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
ff=(ffmpeg -hide_banner -loglevel error -nostdin -y)
exact=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1)
video=(-c:v libx264 -preset ultrafast -crf 30 -pix_fmt yuv420p -threads 1 -movflags +faststart)
audio=(-c:a aac -b:a 64k -ar 48000 -ac 1)

# speech: espeak-ng at 130 words a minute is what Whisper transcribes best
espeak-ng -s 130 -v en-us -w "$work/intro.wav" "Welcome to the Conveyor bakery. Fresh bread every morning."
espeak-ng -s 130 -v en-us -w "$work/outro.wav" "Thank you for watching. See you tomorrow."

# intro.mp4: 5.5 s test pattern; the speech starts at 0.2 s and ends before the 0.8 s transition out
"${ff[@]}" -f lavfi -i "testsrc=size=640x360:rate=25:duration=5.5" -i "$work/intro.wav" \
  -filter_complex "[1:a]adelay=200:all=1,apad=whole_dur=5.5,atrim=duration=5.5[a]" -map 0:v -map "[a]" \
  "${video[@]}" "${audio[@]}" "${exact[@]}" "$here/intro.mp4"

# outro.mp4: 4.5 s colour bars; the speech starts at 1.0 s, after the transition in
"${ff[@]}" -f lavfi -i "smptebars=size=640x360:rate=25:duration=4.5" -i "$work/outro.wav" \
  -filter_complex "[1:a]adelay=1000:all=1,apad=whole_dur=4.5,atrim=duration=4.5[a]" -map 0:v -map "[a]" \
  "${video[@]}" "${audio[@]}" "${exact[@]}" "$here/outro.mp4"

# logo.png: 120x60, white CONVEYOR on a translucent red plate (RGBA)
"${ff[@]}" -f lavfi -i "color=c=0xb03a2e@0.85:size=120x60,format=rgba" -frames:v 1 \
  -vf "drawtext=fontfile=$font:text=CONVEYOR:fontsize=18:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2" \
  -pix_fmt rgba "${exact[@]}" "$here/logo.png"

# music.m4a: 5 s soft C major chord, fading in and out
"${ff[@]}" -f lavfi -i "sine=frequency=261.63:duration=5" -f lavfi -i "sine=frequency=329.63:duration=5" \
  -f lavfi -i "sine=frequency=392:duration=5" \
  -filter_complex "amix=inputs=3:normalize=1,volume=0.5,afade=t=in:d=0.5,afade=t=out:st=4.2:d=0.8" \
  -c:a aac -b:a 48k -ar 48000 -ac 2 "${exact[@]}" "$here/music.m4a"
