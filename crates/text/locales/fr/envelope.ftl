# L'enveloppe imprimée, français. Imprimée en WinAnsi (Latin-1) : é, è, ê, ç, à … s'impriment.
#
# Glossaire :
#   envelope   enveloppe (cette carte de lignes et de grilles)
#   row        ligne ; « cross out » = barrer la ligne
#   TAN        code TAN (3 chiffres d'une ligne)
#   checksum   somme de contrôle de 6 chiffres (SUM dans les messages)
#   add-to-amount, minus   ajout, moins (colonnes des avis au bénéficiaire)

envelope-fold = plier ici - la face imprimée de l'autre page vers l'intérieur
envelope-title = { $operator } - enveloppe de paiement par SMS
envelope-number-label = Numéro d'enveloppe (EUIN)
envelope-rows-inside = { $rows } lignes à l'intérieur. Sans valeur tant qu'elle n'est pas liée à un compte.
envelope-register = Enregistrement : envoyez  REG { $euin } <enveloppe actuelle> <ligne> <TAN>
envelope-register-to = au { $number } (un agent enregistre votre première enveloppe).
envelope-seal = N'acceptez pas cette enveloppe si son scellé est rompu.
envelope-secret = Enveloppe { $euin } - SECRET. Barrez chaque ligne une fois utilisée.
envelope-rows-header = lig g ajout           TAN moins  SUM: recette
envelope-howto-1 = Bas (petits paiements) :  PAY <enveloppe> <bénéficiaire> <montant> <ligne> <SUM>. SUM : les six termes de la ligne ; LS = chiffres avant
envelope-howto-2 = la virgule, Ak = k-ième chiffre du bénéficiaire depuis la droite, Sk = k-ième chiffre du montant depuis la gauche, T = somme des chiffres
envelope-howto-3 = du montant ; ajoutez le nombre après +, gardez le dernier chiffre.   Moyen :  PAYG <enveloppe> <ligne> <bénéficiaire : 2 premiers chiffres,
envelope-howto-4 = puis pour chacun des 10 derniers son code dans la grille de la ligne à cette position> <montant + ajout> <code de taille de la grille> <SUM de la ligne>.
envelope-howto-5 = Haut : pareil avec PAYC ; la banque renvoie le message avec une ligne de la banque, son TAN et son SUM (vérifiez-le) ; si c'est juste, envoyez
envelope-howto-6 = OK <enveloppe> <ligne banque> <TAN banque> <votre ligne suivante> <SUM de cette ligne sur le bénéficiaire et le montant voulus>.
envelope-howto-7 = Réglages (LIMIT, DIALBACK, HIGH, PASSWORD, DISPUTE, LANGUE) et REG finissent par <ligne> <SUM de cette ligne sur le numéro du réglage>.
envelope-howto-8 = Une réponse de la banque montre toujours une ligne et son TAN (ou SUM) : vérifiez-la sur cette carte, puis barrez cette ligne.
envelope-howto-9 = Ne communiquez jamais ces numéros. Gardez la dernière ligne pour enregistrer votre prochaine enveloppe (REG).
