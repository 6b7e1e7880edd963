from omnichannel.schemas import main

main()
