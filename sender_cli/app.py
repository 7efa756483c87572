"""The `sender` command: the typer root, the global --config option, and error handling.

Each noun is a command group in `sender_cli.commands`. Commands stay thin: they parse, call the
domain layer in `daemons.core`, and render. A `SenderError` (bad input, missing thing, broken
config) becomes one line on stderr and exit 1; a usage error one line and exit 2.
"""

from __future__ import annotations

import sqlite3

import typer
from typer.core import TyperGroup

from daemons.core.errors import SenderError
from sender_cli import context, render
from sender_cli.commands import recording
from sender_cli.commands import config_cmd, daemon, endpoint, key, rendition, snapshot, stream, system, token
from sender_cli.commands import cache_config, doctor, install_cmd, restream


class SenderGroup(TyperGroup):
    """Turns user-facing errors into one line and an exit code, wherever they are raised."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except SenderError as e:
            render.error(e.message)
            raise typer.Exit(1) from None
        except typer.TyperException as e:  # click's usage errors, as vendored by typer
            if type(e).__name__ == "NoArgsIsHelpError":
                raise  # typer prints the group's help
            sub = getattr(e, "ctx", None)
            hint = f" (see `{sub.command_path} --help`)" if sub is not None else ""
            render.error(f"{e.format_message()}{hint}")
            raise typer.Exit(getattr(e, "exit_code", 2)) from None
        except (OSError, sqlite3.Error) as e:
            render.error(str(e))
            raise typer.Exit(1) from None
        finally:
            if isinstance(ctx.obj, context.CLIContext):
                ctx.obj.close()


app = typer.Typer(
    cls=SenderGroup,
    name="sender",
    help="Sender: self-hosted live streaming. RTMP in from OBS, low-latency HLS out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        envvar="SENDER_CONFIG",
        metavar="PATH",
        help="Config file (default /etc/sender/sender.toml).",
        show_default=False,
    ),
) -> None:
    context.get(ctx).config_path = config


system.register(app)
install_cmd.register(app)
doctor.register(app)
app.add_typer(stream.app, name="stream")
app.add_typer(recording.app, name="recording")
app.add_typer(key.app, name="key")
app.add_typer(token.app, name="token")
app.add_typer(endpoint.app, name="endpoint")
app.add_typer(rendition.app, name="rendition")
app.add_typer(restream.app, name="restream")
app.add_typer(snapshot.app, name="snapshot")
app.add_typer(config_cmd.app, name="config")
app.add_typer(daemon.app, name="daemon")
app.add_typer(cache_config.app, name="cache-config")
app.command("up")(daemon.up)


def main() -> None:
    app()
