# bash completion for hsbrokerd (installed into bash-completion's
# completions folder, loaded on first use).

_hsbrokerd()
{
	local cur prev words cword
	_init_completion || return

	case $prev in
	--socket | --config)
		_filedir
		return
		;;
	--log-level)
		COMPREPLY=($(compgen -W 'error warn info debug' -- "$cur"))
		return
		;;
	--slab-size | --host-cap | --cuda-slab-size | --cuda-cap | --spin-us)
		return
		;;
	esac
	COMPREPLY=($(compgen -W '--socket --config --check-config --slab-size --host-cap
		--cuda-slab-size --cuda-cap --log-level --spin-us --help --version' -- "$cur"))
}
complete -F _hsbrokerd hsbrokerd
