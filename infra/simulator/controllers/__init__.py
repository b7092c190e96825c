"""The twin's controllers: asyncio tasks that react to stored events as Harvester's would."""
