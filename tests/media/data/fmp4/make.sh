#!/bin/sh
# Regenerates the fragmented-MP4 fixtures for tests/media/test_fmp4*.py: 2 s of lavfi test
# sources through ffmpeg's mp4 muxer writing to a pipe, as Sender's packager will read it.
# Run from anywhere: ./make.sh  (needs ffmpeg with libx264, libx265, libopus; ffmpeg 5.1 made these)
set -eu
cd "$(dirname "$0")"

FLAGS=+empty_moov+default_base_moof+delay_moov
VIDEO="-f lavfi -i testsrc2=size=320x240:rate=25"
AUDIO="-f lavfi -i sine=frequency=440:sample_rate=44100"
X264="-c:v libx264 -preset veryfast -g 25 -threads 1"
ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }

# H.264 + AAC, one moof+mdat per packet.
ff $VIDEO $AUDIO -t 2 $X264 -c:a aac -f mp4 -movflags +frag_every_frame$FLAGS pipe:1 > av_frag_every_frame.mp4
# H.264 + AAC, ~200 ms fragments: one moof with a traf per track.
ff $VIDEO $AUDIO -t 2 $X264 -c:a aac -f mp4 -frag_duration 200000 -movflags $FLAGS pipe:1 > av_frag_200ms.mp4
# As above with +separate_moof: one moof+mdat per track per fragment.
ff $VIDEO $AUDIO -t 2 $X264 -c:a aac -f mp4 -frag_duration 200000 -movflags +separate_moof$FLAGS pipe:1 > av_separate_moof.mp4
# H.264 only, 200 ms fragments with a 1 s GOP: only every 5th fragment starts on a keyframe.
ff $VIDEO -t 2 $X264 -f mp4 -frag_duration 200000 -movflags $FLAGS pipe:1 > video_only_frag_200ms.mp4
# HEVC (hvc1) only, one fragment per frame; closed GOPs without scene cuts, so keyframes fall on
# every 25th frame (x265's default open GOP puts its CRA at decode index 21, ahead of 4 RASL frames).
ff $VIDEO -t 2 -c:v libx265 -preset veryfast -g 25 -tag:v hvc1 \
  -x265-params log-level=error:pools=1:frame-threads=1:scenecut=0:open-gop=0 \
  -f mp4 -movflags +frag_every_frame$FLAGS pipe:1 > hevc_frag_every_frame.mp4
# Opus only, mono 48 kHz, 200 ms fragments.
ff -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:a libopus -ac 1 -f mp4 -frag_duration 200000 \
  -movflags $FLAGS pipe:1 > opus_frag_200ms.mp4
