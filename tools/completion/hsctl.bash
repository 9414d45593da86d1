# bash completion for hsctl and hsbrokerd (installed into
# bash-completion's completions folder, loaded on first use).

_hsctl()
{
	local cur prev words cword
	_init_completion || return

	case $prev in
	--socket | -s)
		_filedir
		return
		;;
	--iterations | -n)
		return
		;;
	ls | list)
		COMPREPLY=($(compgen -W 'tensors topics clients pools --json --socket' -- "$cur"))
		return
		;;
	esac

	local cmd="" w
	for w in "${words[@]:1:cword-1}"; do
		case $w in
		ls | list | status | top | stats | doctor | help) cmd=$w ;;
		esac
	done
	local opts="--socket --json --help --version"
	case $cmd in
	"") COMPREPLY=($(compgen -W "ls status top stats doctor help $opts" -- "$cur")) ;;
	top) COMPREPLY=($(compgen -W "--iterations $opts" -- "$cur")) ;;
	stats) COMPREPLY=($(compgen -W "--prometheus --iterations $opts" -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "$opts" -- "$cur")) ;;
	esac
}
complete -F _hsctl hsctl
