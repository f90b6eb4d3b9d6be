from promoflow.cli import main

main()
