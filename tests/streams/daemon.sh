# Shared by the streams' shell tests (sourced): start the daemon and wait
# until its control socket answers; shut it down through meactl and check it
# ended with status 0.  Uses MEAD, MEACTL, CTL and dir; sets mpid.

mead_start() {   # mead_start MEAD-ARGUMENTS...
	"$MEAD" "$@" 2>"$dir/mead.log" &
	mpid=$!
	i=0
	until "$MEACTL" -e "$CTL" -t 500 ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 30 ] || ! kill -0 "$mpid" 2>/dev/null; then
			echo "mead did not answer on $CTL"; cat "$dir/mead.log"; exit 1
		fi
	done
}

mead_shutdown() {
	"$MEACTL" -e "$CTL" shutdown >/dev/null
	i=0
	while kill -0 "$mpid" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 150 ] && { echo "mead did not stop after shutdown"; exit 1; }
		sleep 0.1
	done
	set +e
	wait "$mpid"
	rc=$?
	set -e
	mpid=
	[ $rc -eq 0 ] || { echo "mead exited with $rc"; cat "$dir/mead.log"; exit 1; }
}
