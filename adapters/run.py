"""Run Baton's adapters together in one process: Slack (customers in Slack Connect channels, and the
staff side for every platform) and, when ``DISCORD_TOKEN`` is set, Discord's customers."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from adapters.slack import SlackAdapter, SlackConfig
from bot.service import Service
from bot.settings import Settings

log = structlog.get_logger(__name__)


async def serve(service: Service, settings: Settings, *, host: str = "0.0.0.0") -> None:
    """Serve until cancelled: Slack's HTTP Events API on $PORT (or Socket Mode with SLACK_APP_TOKEN;
    ``/healthz`` is served on $PORT either way) and Discord's gateway when it is configured.

    Raises ``SlackConfigError`` or ``DiscordConfigError`` when the configuration cannot work, before
    anything is answered, or later if the Discord gateway refuses the bot for good."""
    discord = None
    if settings.discord_token:
        from adapters.discord_gateway import DiscordAdapter, DiscordConfig

        discord = DiscordAdapter(service, DiscordConfig.from_settings(settings))
    config = SlackConfig.from_settings(settings, service.policy, customers_elsewhere=discord is not None)
    slack = SlackAdapter(service, config, elsewhere={"discord": discord} if discord else None)
    await slack.setup()
    if discord is not None:
        await discord.start()  # logged in before the outbox runs: it may hold replies for Discord
        slack.health.append(lambda: discord.ready and not discord.client.is_closed())
    slack.start()
    runner = web.AppRunner(slack.web_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, settings.port).start()
    socket_mode = None
    try:
        if config.app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(slack.app, config.app_token)
            await socket_mode.connect_async()  # type: ignore[no-untyped-call]
            log.info("slack_socket_mode_connected", port=settings.port)
        else:
            log.info("slack_http_listening", port=settings.port, path="/slack/events")
        if discord is not None:
            await discord.closed  # raises if the gateway refuses the bot for good
        await asyncio.Event().wait()
    finally:
        if socket_mode is not None:
            await socket_mode.close_async()  # type: ignore[no-untyped-call]
        if discord is not None:
            await discord.stop()
        await slack.stop()
        await runner.cleanup()
